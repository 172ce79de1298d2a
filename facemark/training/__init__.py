"""Building weights, never imported by ``facemark detect``: labelled data readers, the pack of
aligned crops, augmentation, losses, the training loop and export. Needs torch (``facemark[torch]``)."""
