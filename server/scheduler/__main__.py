from server.scheduler.cli import main

raise SystemExit(main())
