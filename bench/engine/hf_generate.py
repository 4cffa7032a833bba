"""HF transformers generate() on a random-weight model of an HF config, the reference next to
`kvoffload bench --random-weights` (bench/engine/run_gpu.sh). bf16 on the GPU, sdpa attention,
greedy, random prompt ids, every sequence generating exactly --gen tokens.

Prefill time = up to the first logits processor call (the prompt's forward); decode time = from
there to the end of generate() (gen - 1 forwards of the batch). Prints one JSON line per length.

--batch 0: the largest batch that fits. HF prefills the whole batch in one forward, so a
sequence costs its KV cache (grown by concatenation during decode) plus its share of the
prefill's peak activations (the MLP's gate, up and product rows and a few hidden-size rows per
token); the batch is the free memory after loading over that, and on an out-of-memory error it
is retried 10% smaller. The JSON line lists the batches that ran out of memory.
"""
import argparse
import gc
import json
import os
import time

# Set before torch initialises CUDA: a growing KV cache then fragments less.
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

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
    ap.add_argument("--batch", type=int, default=1, help="0: the largest that fits")
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
        batch = a.batch or largest_batch(config, n, a.gen)
        failed = []
        while True:
            try:
                result = run(model, config, n, batch, a.gen)
                break
            except torch.cuda.OutOfMemoryError:
                if a.batch or batch == 1:
                    raise
                failed.append(batch)
            # Outside the handler: the failed forward's frames (and tensors) are gone by now.
            gc.collect()
            torch.cuda.empty_cache()
            batch = max(1, int(batch * 0.9))
        result.update({"impl": "hf", "transformers": transformers.__version__,
                       "torch": torch.__version__, "config": a.config, "load_seconds": load_s,
                       "largest_batch_search": "memory estimate" if a.batch == 0 else None,
                       "out_of_memory_at": failed})
        print(json.dumps(result), flush=True)


def largest_batch(config, n, gen):
    """Sequences of n prompt tokens + gen that fit in the free device memory (see the docstring)."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 2 * (n + gen)
    activations = n * 2 * (3 * config.intermediate_size + 4 * config.hidden_size)
    free, _ = torch.cuda.mem_get_info()
    return max(1, int(0.95 * free / (kv + activations)))


def run(model, config, n, batch, gen):
    ids = torch.randint(0, config.vocab_size, (batch, n), device="cuda")
    clock = Clock()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen,
                             min_new_tokens=gen, do_sample=False, eos_token_id=None,
                             pad_token_id=0, logits_processor=LogitsProcessorList([clock]))
    torch.cuda.synchronize()
    end = time.perf_counter()
    assert out.shape[1] == n + gen
    prefill = clock.first - start
    decode = end - clock.first
    peak = torch.cuda.max_memory_allocated() / 2**30
    del out, ids
    torch.cuda.empty_cache()
    return {"prompt_tokens": n, "batch": batch, "generated_tokens": gen,
            "prefill_tokens_per_second": batch * n / prefill,
            "decode_tokens_per_second": batch * (gen - 1) / decode,
            "decode_step_ms": 1e3 * decode / (gen - 1), "max_memory_gib": peak}


if __name__ == "__main__":
    main()
