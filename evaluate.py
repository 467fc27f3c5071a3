from hateful_memes.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
