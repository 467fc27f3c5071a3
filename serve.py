from hateful_memes.serving.service import main

if __name__ == "__main__":
    raise SystemExit(main())
