from pi_monitor.cli import main

raise SystemExit(main())
