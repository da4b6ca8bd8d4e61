from digestbot.cli import main

raise SystemExit(main())
