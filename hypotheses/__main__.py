from hypotheses.cli import main

raise SystemExit(main())
