"""The soundness corpus: small adversarial PyTorch programs compiled through pypm and compared
with eager (``corpus.py`` holds the programs, ``test_corpus.py`` the tests)."""
