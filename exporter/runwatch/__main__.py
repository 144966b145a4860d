from runwatch.cli import main

raise SystemExit(main())
