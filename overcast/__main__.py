from overcast.cli import main

raise SystemExit(main())
