"""Tokenize: `corpus/clean` -> `tokens/<tokenizer-id>/{train,val}` fixed-size blocks (stage.py).

bpe.py (the base model's tokenizer or a byte-level BPE trained on the corpus), packing.py (documents
+ EOS cut into blocks, split by doc hash), shards.py (encoding over Dask shards), params.py.
"""
