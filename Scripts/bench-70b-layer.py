#!/usr/bin/env python3
"""Writes LLaMA-3-70B-shaped GGUF files with random weights for measuring one layer's cost.

Two transformer blocks of the 70B shape (d=8192, 64 query heads, 8 KV heads, head 128, FFN 28672)
and a tiny vocabulary (256) so that the embedding and output cost nothing next to the blocks.
An F16 file is written with gguf-py, then quantized with llama.cpp's quantizer (llama-cpp-python)
to Q4_K_M (llama.cpp's layer mixture: with 2 blocks, block 0 is all Q4_K and block 1 gets the
Q6_K attn_v/ffn_down that half of the blocks of a real 80-block Q4_K_M model get, so the mean of
the two is the mean 70B Q4_K_M block) and Q4_0 (pure).

A minimal 256-token vocabulary is included so that llama.cpp loads the files too (the reference
timing below); the engines are fed token ids, never text.

Usage: Scripts/bench-70b-layer.py [OUT_DIR]   (default ~/.cache/caravan/models/bench)
           prints the paths written. Files are large (F16 3.4 GB, Q4 ~1 GB each); never commit them.
       Scripts/bench-70b-layer.py --llama-cpp FILE THREADS PP TG REPS
           llama.cpp's prefill and decode speed on FILE as JSON lines (medians, like `caravan bench`).
"""
import ctypes
import os
import sys

import numpy as np
import gguf

D, HEADS, KV_HEADS, FFN, LAYERS, VOCAB = 8192, 64, 8, 28672, 2, 256
HEAD = D // HEADS


def write_f16(path: str) -> None:
    rng = np.random.default_rng(70)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("llama3-70b-shape-2-layers")
    w.add_block_count(LAYERS)
    w.add_context_length(8192)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(HEAD)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(VOCAB - 3)])
    w.add_token_scores([0.0] * VOCAB)
    w.add_token_types([2, 3, 3] + [6] * (VOCAB - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def matrix(rows: int, cols: int) -> np.ndarray:
        # numpy shape (rows=outputs, cols=inputs); gguf stores dims reversed ([cols, rows]).
        out = np.empty((rows, cols), dtype=np.float16)
        step = max(1, (1 << 26) // cols)
        for r in range(0, rows, step):
            n = min(step, rows - r)
            out[r:r + n] = (rng.standard_normal((n, cols), dtype=np.float32) * (1.0 / np.sqrt(cols))).astype(np.float16)
        return out

    def norm() -> np.ndarray:
        return np.ones(D, dtype=np.float32)

    w.add_tensor("token_embd.weight", matrix(VOCAB, D))
    for i in range(LAYERS):
        w.add_tensor(f"blk.{i}.attn_norm.weight", norm())
        w.add_tensor(f"blk.{i}.attn_q.weight", matrix(D, D))
        w.add_tensor(f"blk.{i}.attn_k.weight", matrix(KV_HEADS * HEAD, D))
        w.add_tensor(f"blk.{i}.attn_v.weight", matrix(KV_HEADS * HEAD, D))
        w.add_tensor(f"blk.{i}.attn_output.weight", matrix(D, D))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", norm())
        w.add_tensor(f"blk.{i}.ffn_gate.weight", matrix(FFN, D))
        w.add_tensor(f"blk.{i}.ffn_up.weight", matrix(FFN, D))
        w.add_tensor(f"blk.{i}.ffn_down.weight", matrix(D, FFN))
    w.add_tensor("output_norm.weight", norm())
    w.add_tensor("output.weight", matrix(VOCAB, D))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src: str, dst: str, ftype: int, pure: bool) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 1
    params.pure = pure
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"bench-70b-layer: quantizing to {dst} failed ({rc})")


def llama_cpp_bench(path: str, threads: int, pp: int, tg: int, reps: int) -> None:
    import json
    import statistics
    import time

    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=max(pp, tg) + 16,
                          n_batch=max(pp, 1), verbose=False)
    tokens = [3 + (i * 7919 + 13) % (VOCAB - 3) for i in range(max(pp, tg))]
    llm.eval(tokens[:1])  # warm-up: touch the weights
    name = os.path.basename(path)
    for test, count in (("pp%d" % pp, pp), ("tg%d" % tg, tg)):
        times = []
        for _ in range(reps):
            llm.reset()
            t0 = time.perf_counter()
            if test.startswith("pp"):
                llm.eval(tokens[:count])
            else:
                for t in tokens[:count]:
                    llm.eval([t])
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        print(json.dumps({"engine": "llama.cpp", "model": name, "threads": threads, "test": test,
                          "tokens_per_second": round(count / median, 2), "seconds": round(median, 5)}))


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--llama-cpp":
        llama_cpp_bench(sys.argv[2], *(int(a) for a in sys.argv[3:]))
        return
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/caravan/models/bench")
    os.makedirs(out, exist_ok=True)
    f16 = os.path.join(out, "llama70b-shape-2L.F16.gguf")
    if not os.path.exists(f16):
        write_f16(f16 + ".tmp")
        os.rename(f16 + ".tmp", f16)
    print(f16)
    import llama_cpp

    targets = [
        ("Q4_K_M", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, False),
        ("Q4_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, True),
    ]
    for name, ftype, pure in targets:
        dst = os.path.join(out, f"llama70b-shape-2L.{name}.gguf")
        if not os.path.exists(dst):
            quantize(f16, dst + ".tmp", ftype, pure)
            os.rename(dst + ".tmp", dst)
        print(dst)


if __name__ == "__main__":
    main()
