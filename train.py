from hateful_memes.train import main

if __name__ == "__main__":
    raise SystemExit(main())
