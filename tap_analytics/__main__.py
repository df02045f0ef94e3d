from tap_analytics.tap import main

main()
