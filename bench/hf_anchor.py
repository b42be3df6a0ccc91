#!/usr/bin/env python3
"""hf_anchor.py: the anchor lyra is measured against on a GPU: Hugging Face
transformers + accelerate running a Llama of the 1.1B shape (dim 2048, ffn
5632, 22 layers, 32 heads, 4 KV heads, vocab 32000) in float16, with random
weights (no download): the model is built on the meta device and every
parameter is filled directly on the device that the device map gives it.

  --split all   everything on GPU 0
  --split half  half the layers on GPU 0, the rest on the CPU (device_map +
                max_memory through accelerate, as its users do)
Prints one line: "tokens/s X (64 new tokens, greedy)".
"""
import argparse, time

import torch
from accelerate import dispatch_model, infer_auto_device_map, init_empty_weights
from accelerate.utils import set_module_tensor_to_device
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=["all", "half"], default="all")
    ap.add_argument("--new-tokens", type=int, default=64)
    a = ap.parse_args()
    cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                      num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
                      max_position_embeddings=2048, torch_dtype=torch.float16)
    with init_empty_weights():
        model = LlamaForCausalLM(cfg)
    if a.split == "all":
        dmap = {"": 0}
    else:
        n = cfg.num_hidden_layers
        dmap = {"model.embed_tokens": 0, "model.rotary_emb": 0}
        for i in range(n):
            dmap[f"model.layers.{i}"] = 0 if i < n // 2 else "cpu"
        dmap["model.norm"] = "cpu"
        dmap["lm_head"] = "cpu"
    g = torch.Generator().manual_seed(0)
    for name, p in list(model.named_parameters()):
        dev = None
        for k in sorted(dmap, key=len, reverse=True):
            if k == "" or name == k or name.startswith(k + "."):
                dev = dmap[k]; break
        val = (torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.02).to(torch.float16)
        if name.endswith("norm.weight"):
            val = torch.ones(p.shape, dtype=torch.float16)
        set_module_tensor_to_device(model, name, dev, value=val)
    # buffers (rotary inv_freq) are real tensors: init_empty_weights leaves them
    # on the CPU and dispatch_model moves them with their module
    model = dispatch_model(model, device_map=dmap)
    model.eval()
    ids = torch.tensor([[1, 15043, 29892, 590]], device="cuda:0")
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, do_sample=False, min_new_tokens=4)  # warm-up
        torch.cuda.synchronize()
        t = time.time()
        out = model.generate(ids, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False)
        torch.cuda.synchronize()
        dt = time.time() - t
    n = out.shape[1] - ids.shape[1]
    print(f"split {a.split}: map {sorted(set(map(str, dmap.values())))}")
    print(f"tokens/s {n / dt:.2f} ({n} new tokens, greedy, float16)")


if __name__ == "__main__":
    main()
