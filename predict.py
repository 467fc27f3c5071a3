from hateful_memes.cli.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
