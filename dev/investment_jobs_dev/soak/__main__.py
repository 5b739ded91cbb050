from investment_jobs_dev.soak.run import main

raise SystemExit(main())
