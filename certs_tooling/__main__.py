from certs_tooling.cli import main

raise SystemExit(main())
