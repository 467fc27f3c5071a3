from hateful_memes.pretrain import main
if __name__ == "__main__":
    raise SystemExit(main())
