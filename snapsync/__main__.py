from snapsync.cli import main

main()
