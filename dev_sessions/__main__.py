from dev_sessions.cli import main

main()
