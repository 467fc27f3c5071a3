from hateful_memes.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
