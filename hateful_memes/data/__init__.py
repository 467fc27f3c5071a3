"""The shared task's files and the memes in them; reads only runtime/ and labels.

Read annotations.py first (the `Meme` record and the annotation readers everything else
uses), then submission.py (the prediction file format), crossval.py (caption-grouped folds),
twins.py (the training labels of a meme's caption twins, which the Platt maps read),
images.py (image folders as memes for predict.py --images) and demo.py (the synthetic demo set
in the real file format).
"""
