from digestbot.cli import main

# Guarded: spawned worker processes (send_workers) must never run the command line again.
if __name__ == "__main__":
    raise SystemExit(main())
