from hateful_memes.service import main

if __name__ == "__main__":
    raise SystemExit(main())
