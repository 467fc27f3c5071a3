from hateful_memes.cli.pretrain import main

if __name__ == "__main__":
    raise SystemExit(main())
