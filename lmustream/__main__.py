from lmustream.cli import main

raise SystemExit(main())
