#!/usr/bin/env python3
"""Tokenizer oracle fixtures: token ids from HF `tokenizers` and chat prompts from HF
`transformers` apply_chat_template, for the C++ tokenizer tests (tests/tokenizer/).

Two steps, because the GPU machine that has transformers cannot see the project's files:

1. Here (needs the `gguf` package): cut the SmolLM2 GGUF down to its metadata, no tensors,
   so it is small enough to travel:
     python3 tests/oracle/make_tokenizer_fixtures.py vocab-gguf \
         models/SmolLM2-135M-Instruct.Q4_1.gguf .dev/tok/smollm2/smollm2-vocab.gguf
2. On the GPU machine (tokenizers 0.23, transformers 5.17, the gguf wheel installed):
     python3 tests/oracle/make_tokenizer_fixtures.py fixtures --data .dev/tok --out $OUT
   where .dev/tok holds llama3.1/ and qwen3/ (tokenizer.json + tokenizer_config.json),
   smollm2/smollm2-vocab.gguf and haystack.txt (the committed fixtures used
   ../shared/data/haystack/paul-graham-essays/addiction.txt). Copy $OUT/*.json to
   tests/fixtures/tokenizer/.

The SmolLM2 oracle is built twice and both are recorded: (a) transformers' own GGUF import
(AutoTokenizer with gguf_file=...), and (b) a `tokenizers` pipeline assembled from the GGUF
vocabulary with the pre-tokenizer SmolLM2's tokenizer.json declares and llama.cpp's "smollm"
pre-type reproduces (isolate each digit, then the GPT-2 byte-level split). The tests use (b);
the fixture lists the texts (a) disagrees on, so a difference is visible, not hidden. With
transformers 5.17, (a) agrees on every hand-written text but not on 9 of the 150 random ones:
its GGUF import does not read tokenizer.ggml.pre, so it keeps a space in front of a number
character such as U+216B and splits some \\r\\n runs differently from SmolLM2's tokenizer.json.
"""
import argparse
import json
import os
import sys

# Varied on purpose: every branch of the pre-tokenizer regexes, NFC, added tokens, byte
# fallbacks of rare characters, and the merge loop on long words.
TEXTS = [
    "Hello world",
    "Hello, world! How are you today?",
    "",
    " ",
    "a",
    "   leading spaces and trailing spaces   ",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "for (int i = 0; i < 10; ++i) { x[i] = y[i] * 2.5f; }  // comment",
    "1 12 123 1234 12345 123456 1234567 12345678 123456789 1234567890",
    "3.14159 -42 +7 1,000,000 0x1F 1e-9 2024-07-26 10:30:59",
    "Prices: $1.99, €2,50, £3; 50% off!!!",
    "中文分词测试：我爱自然语言处理。",
    "日本語のテキストです。カタカナとひらがな。",
    "한국어 텍스트 테스트입니다.",
    "Emoji: 😀 🦙 👍🏽 🇺🇸 👨‍👩‍👧‍👦 ❤️ 🏳️‍🌈",
    "Precomposed: café naïve résumé Ångström Zoë",
    "Decomposed: cafe\u0301 nai\u0308ve re\u0301sume\u0301 A\u030angstro\u0308m Zoe\u0308",
    "Hangul jamo: \u1100\u1161\u11a8 and composed \uac01",
    "Spaces:  two   three    four     five",
    "Tabs:\tone\t\ttwo\t\t\tthree",
    "Newlines:\none\n\ntwo\n\n\nthree\n\n\n\n",
    "Windows\r\nline\r\nendings\r\n\r\n",
    "mixed \t \n \t\n  \n whitespace   \n",
    "trailing newline\n",
    "   ",
    "\n\n\n",
    "I'm sure you're right, they've said we'll see, he'd go, it's John's.",
    "I'M SURE YOU'RE RIGHT, THEY'VE SAID WE'LL SEE, HE'D GO, IT'S JOHN'S. DON'T",
    "Mixed: I'Ll We'Ve It'S",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
    "text<|eot_id|>more text<|endoftext|> and <|im_end|>tail",
    "<tool_call>{\"name\": \"f\"}</tool_call> <think>hmm</think>",
    "<|im_start|><|im_start|> <|eot_id|><|eot_id|>",
    "broken <|im_start and <|eot_id| and |>",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism "
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 120,
    "ab" * 50,
    "!!!!!!!!!!???????........------======",
    "Mixed scripts: English, Русский текст, Ελληνικά, العربية, עברית, हिन्दी, ไทย",
    "Ümlauts ÄÖÜ äöü ß — “quotes” ‘single’ … «guillemets»",
    "Math: ∑_{i=1}^{n} x_i² ≤ √(π·e) ∞ ≠ ±",
    "URL https://example.com/path?query=1&b=two#frag user@example.org",
    "{\"name\": \"Alice\", \"age\": 30, \"tags\": [\"a\", \"b\"], \"ok\": true}",
    "CamelCaseIdentifier snake_case_identifier kebab-case-identifier SCREAMING_CASE",
    "\u00a0non-breaking\u00a0space\u2003em space\u3000ideographic",
    "zero\u200bwidth\u200cjoiners\u200d",
    "Private use \ue000 and astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈",
    # \s differs between regex engines: U+180E is not White_Space, U+0085 and U+2028 are.
    "a \u180e b\u0085c\u2028d \u2029 e\u202f\u205f",
    "Case folding: 'ſ 'K 'S 'İ IT'S it'ſ",
    "NFC: \u2126 \u212b \u1100\u1161\u11a8 e\u0301\u0327 \u0f73 \ufb01",
    "Controls: \x00 \x01\x1f\x7f \ufeff \U000e0001 \u0378",
]


def random_texts(n=150, seed=1234):
    """Seeded random strings over an alphabet that stresses the pre-tokenizer regexes."""
    import random

    rng = random.Random(seed)
    alphabet = (list(" \t\n\r\x0b\x0c") * 6 + list("0123456789") * 3 +
                list("abcXYZ'sStTmMdDlLvVrReE") * 2 + list(".,;:!?-_()[]{}<>|/\\\"#$%&*+=@^`~") +
                ["é", "e\u0301", "ñ", "n\u0303", "Å", "A\u030a", "ß", "中", "日", "한", "😀", "🦙",
                 "🏽", "\u200d", "👨", "❤", "\ufe0f", "🇺", "\u0085", "\u00a0", "\u2028", "\u180e",
                 "\u3000", "\u200b", "١", "Ⅻ", "½", "α", "Ж", "א", "ह", "ि", "𝔘", "’", "ſ",
                 "<|im_start|>", "<|im_end|>", "<|eot_id|>", "<think>", "<|endoftext|>"])
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(n)]

CHAT_CASES = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a terse assistant."},
     {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "  Padded question with spaces  \n"}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "Name a color."},
     {"role": "assistant", "content": "Blue."},
     {"role": "user", "content": "Another one?"}],
    [{"role": "user", "content": "Extract the records as JSON:\n\nAlice, 30, Paris\nBob, 25, Rome"}],
]


def make_vocab_gguf(src, dst):
    """Copies every metadata key of `src` (no tensors) into a new GGUF at `dst`."""
    import gguf

    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {dst} ({os.path.getsize(dst)} bytes)")


def read_gguf_vocab(path):
    import gguf

    reader = gguf.GGUFReader(path)
    f = reader.fields
    return {
        "tokens": f["tokenizer.ggml.tokens"].contents(),
        "token_type": f["tokenizer.ggml.token_type"].contents(),
        "merges": f["tokenizer.ggml.merges"].contents(),
        "pre": f["tokenizer.ggml.pre"].contents(),
        "chat_template": f["tokenizer.chat_template"].contents(),
        "bos": f["tokenizer.ggml.bos_token_id"].contents(),
        "eos": f["tokenizer.ggml.eos_token_id"].contents(),
    }


def smollm_tokenizer_from_vocab(v):
    """SmolLM2's pipeline: digits isolated one by one, then the GPT-2 byte-level split."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    assert v["pre"] == "smollm", v["pre"]
    vocab = {t: i for i, t in enumerate(v["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in v["merges"]]
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    control = [t for t, ty in zip(v["tokens"], v["token_type"]) if ty == 3]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    return tok


def haystack_excerpt(path, n_chars=2500):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text[:n_chars]


def encode_all(tok, texts):
    out = []
    for t in texts:
        enc = tok.encode(t, add_special_tokens=False)
        out.append({"text": t, "ids": enc.ids})
    return out


def decode_cases(tok, texts):
    """Decodes of id prefixes cut inside multibyte characters: HF replaces each broken
    sequence with U+FFFD, and the C++ decoder must do the same."""
    cases = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        for k in range(1, min(len(ids), 24) + 1):
            cases.append({"ids": ids[:k], "text": tok.decode(ids[:k], skip_special_tokens=False)})
    return cases


def render_chats(hf_tok, template=None, **kwargs):
    out = []
    for messages in CHAT_CASES:
        text = hf_tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                          add_generation_prompt=True, **kwargs)
        out.append({"messages": messages, "text": text})
    return out


def fixtures(data, out):
    import tokenizers
    import transformers
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    os.makedirs(out, exist_ok=True)
    texts = TEXTS + [haystack_excerpt(os.path.join(data, "haystack.txt"))] + random_texts()
    tricky = [t for t in TEXTS if t.startswith(("中文", "Emoji", "Precomposed", "Decomposed",
                                                "Math", "Private", "Mixed scripts"))]
    versions = {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__}

    for name, chat_kwargs in (("llama3.1", {}), ("qwen3", {"enable_thinking": False})):
        folder = os.path.join(data, name)
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        hf = AutoTokenizer.from_pretrained(folder)
        fixture = {
            "source": f"../shared/data/tokenizers/{name}/tokenizer.json",
            "versions": versions,
            "encode": encode_all(tok, texts),
            "decode": decode_cases(tok, tricky),
            "chat": render_chats(hf, **chat_kwargs),
            "chat_kwargs": chat_kwargs,
        }
        path = os.path.join(out, f"{name.replace('.', '_')}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(fixture, f, ensure_ascii=False, indent=0)
        print(f"{name}: {len(texts)} texts -> {path}")

    gguf_path = os.path.join(data, "smollm2", "smollm2-vocab.gguf")
    vocab = read_gguf_vocab(gguf_path)
    tok = smollm_tokenizer_from_vocab(vocab)
    encoded = encode_all(tok, texts)
    # transformers' own GGUF import, as a second opinion on the same vocabulary.
    disagreements, hf_error = [], None
    try:
        hf = AutoTokenizer.from_pretrained(os.path.dirname(gguf_path),
                                           gguf_file=os.path.basename(gguf_path))
        for case in encoded:
            ids = hf.encode(case["text"], add_special_tokens=False)
            if ids != case["ids"]:
                disagreements.append({"text": case["text"], "transformers_gguf_ids": ids})
    except Exception as e:  # recorded in the fixture; the script's own oracle still stands
        hf_error = f"{type(e).__name__}: {e}"
        hf = AutoTokenizer.from_pretrained(os.path.join(data, "qwen3"))  # only renders templates
    fixture = {
        "source": "models/SmolLM2-135M-Instruct.Q4_1.gguf (tokenizer.ggml.*)",
        "versions": versions,
        "encode": encoded,
        "decode": decode_cases(tok, tricky),
        "chat": render_chats(hf, template=vocab["chat_template"]),
        "transformers_gguf_error": hf_error,
        "transformers_gguf_disagreements": disagreements,
    }
    path = os.path.join(out, "smollm2.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=0)
    print(f"smollm2: {len(texts)} texts, transformers-gguf error={hf_error}, "
          f"disagreements={len(disagreements)} -> {path}")
    for d in disagreements[:5]:
        print("  disagree:", repr(d["text"][:60]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vocab-gguf")
    v.add_argument("src")
    v.add_argument("dst")
    f = sub.add_parser("fixtures")
    f.add_argument("--data", required=True)
    f.add_argument("--out", required=True)
    a = p.parse_args()
    if a.cmd == "vocab-gguf":
        make_vocab_gguf(a.src, a.dst)
    else:
        fixtures(a.data, a.out)


if __name__ == "__main__":
    sys.exit(main())
