"""HF transformers generate() on a random-weight model of an HF config, the reference next to
`kvoffload bench --random-weights` (bench/engine/run_gpu.sh). bf16 on the GPU, sdpa attention,
greedy, random prompt ids, every sequence generating exactly --gen tokens.

Prefill time = up to the first logits processor call (the prompt's forward); decode time = from
there to the end of generate() (gen - 1 forwards of the batch). Prints one JSON line per length.
"""
import argparse
import json
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList


class Clock(LogitsProcessor):
    def __init__(self):
        self.first = None

    def __call__(self, input_ids, scores):
        if self.first is None:
            torch.cuda.synchronize()
            self.first = time.perf_counter()
        return scores


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--prompt-tokens", default="8192")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--gen", type=int, default=32)
    a = ap.parse_args()
    config = AutoConfig.for_model(**json.load(open(a.config)))
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    t0 = time.perf_counter()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16).eval()
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    for n in [int(x) for x in a.prompt_tokens.split(",")]:
        ids = torch.randint(0, config.vocab_size, (a.batch, n), device="cuda")
        clock = Clock()
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.gen,
                                 min_new_tokens=a.gen, do_sample=False, eos_token_id=None,
                                 pad_token_id=0, logits_processor=LogitsProcessorList([clock]))
        torch.cuda.synchronize()
        end = time.perf_counter()
        assert out.shape[1] == n + a.gen
        prefill = clock.first - start
        decode = end - clock.first
        print(json.dumps({"impl": "hf", "transformers": transformers.__version__,
                          "torch": torch.__version__, "config": a.config, "prompt_tokens": n,
                          "batch": a.batch, "generated_tokens": a.gen, "load_seconds": load_s,
                          "prefill_tokens_per_second": a.batch * n / prefill,
                          "decode_tokens_per_second": a.batch * (a.gen - 1) / decode,
                          "decode_step_ms": 1e3 * decode / (a.gen - 1),
                          "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30}),
              flush=True)
        del out, ids
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
