import numpy as np
import torch
from PIL import Image

from hateful_memes.inputs import Inputs


def test_raw_image_inputs_take_files_and_in_memory_images_alike(tmp_path):
    # A fine-tuned image encoder gets raw pictures: from files (predict.py --input) or already
    # decoded (the API and the service); both go through the same transform.
    pictures = [Image.new("RGB", (4, 3), (10 * i, 20, 30)) for i in range(3)]
    paths = []
    for i, picture in enumerate(pictures):
        paths.append(tmp_path / f"{i}.png")
        picture.save(paths[-1])

    def transform(image):
        return torch.from_numpy(np.asarray(image, dtype=np.float32))

    from_files = Inputs(paths, None, image_transform=transform).batch([2, 0])[0]
    in_memory = Inputs(pictures, None, image_transform=transform).batch([2, 0])[0]
    assert torch.equal(from_files, in_memory)
    assert from_files[0, 0, 0, 0] == 20 and from_files[1, 0, 0, 0] == 0  # batch order kept
