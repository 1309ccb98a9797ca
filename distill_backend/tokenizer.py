"""An offline character-level tokenizer for the tiny models.

No tokenizer can be downloaded, and the synthetic task only needs digits, signs and a few template
words, so the tiny models use one token per character (printable ASCII plus newline and tab) and
four special tokens. It is a real ``PreTrainedTokenizerFast``: saved and loaded with the model by
``save_pretrained`` / ``AutoTokenizer.from_pretrained``, so a tiny checkpoint directory looks exactly
like a real Qwen3 one to the rest of the backend.

This module knows nothing about the task or the prompts.
"""

from __future__ import annotations

import string

PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, EOS, BOS, UNK)
CHARACTERS: str = "".join(sorted(set(string.printable) - set("\r\x0b\x0c")))


def build_char_tokenizer(padding_side: str = "left"):
    """A character-level ``PreTrainedTokenizerFast`` with pad/eos/bos/unk.

    ``padding_side`` is passed to the constructor because transformers 5 only persists it (in
    ``tokenizer_config.json``) when it is given there. Left padding suits batched generation.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for char in CHARACTERS:
        vocab.setdefault(char, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Every character is its own pre-token ([\s\S] also matches newlines); Fuse joins on decode.
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        unk_token=UNK,
        padding_side=padding_side,
        clean_up_tokenization_spaces=False,
    )
