"""The C header of an ahead-of-time bundle: its entry function, its arrays as constants,
the arena and weights sizes, the status codes, and a weights-file loader (stdio only)."""
from __future__ import annotations

from math import prod

from backends.llvm.aot_abi import (ABI_VERSION, ALIGNMENT, DTYPE_CODES, MAX_RANK, STATUS,
                                   Layout, TensorDesc)

C_TYPES = {"float32": "float", "float64": "double", "int32": "int32_t", "int64": "int64_t",
           "bool": "uint8_t"}

SHARED_TYPES = f"""\
#ifndef DLC_BUNDLE_TYPES
#define DLC_BUNDLE_TYPES
/* Types shared by every dlc bundle header. */
enum dlc_dtype {{ {', '.join(f'DLC_{k.upper()} = {v}' for k, v in DTYPE_CODES.items())} }};
#define DLC_MAX_RANK {MAX_RANK}

/* One array: its element type, shape (C order) and size in bytes; for a parameter,
   `offset` is where it starts in the weights block. */
typedef struct dlc_tensor {{
    const char *name;
    int32_t dtype;
    int32_t rank;
    int64_t shape[DLC_MAX_RANK];
    uint64_t bytes;
    uint64_t offset;
}} dlc_tensor;

/* A whole bundle, for code that handles any bundle the same way. */
typedef struct dlc_bundle {{
    const char *name;
    int32_t num_inputs, num_outputs, num_params;
    const dlc_tensor *inputs, *outputs, *params;
    uint64_t arena_bytes, arena_alignment, weights_bytes, weights_alignment;
    int32_t weights_embedded, updates_weights, threads;
    const char *weights_file;
    int32_t (*run)(const void *const *inputs, void *const *outputs, void *weights,
                   void *arena);
    const char *(*error_string)(int32_t status);
    const char *(*error_origin)(const void *arena);
    void *(*embedded_weights)(void);
}} dlc_bundle;
#endif
"""


def _c_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode())
    return '"' + "".join(out) + '"'


def _comment(text: str) -> str:
    return text.replace("*/", "* /")


def _tensor(d: TensorDesc) -> str:
    dims = ", ".join(str(n) for n in d.shape) or "0"
    return (f"    {{{_c_string(d.name)}, DLC_{d.dtype.upper()}, {len(d.shape)}, {{{dims}}}, "
            f"{d.nbytes}u, {d.offset}u}},")


def _table(name: str, kind: str, descs: list) -> list[str]:
    if not descs:
        return [f"#define {name.upper()}_{kind.upper()}S_TABLE ((const dlc_tensor *)0)"]
    return [f"static const dlc_tensor {name}_{kind}s[{len(descs)}] = {{",
            *(_tensor(d) for d in descs), "};",
            f"#define {name.upper()}_{kind.upper()}S_TABLE {name}_{kind}s"]


def _array_macros(prefix: str, kind: str, descs: list) -> list[str]:
    lines = []
    for i, d in enumerate(descs):
        shape = ", ".join(str(n) for n in d.shape)
        size = prod(d.shape)
        lines += [f"/* {kind} {i} {_comment(d.name)}: {d.dtype}[{shape}] ({C_TYPES[d.dtype]}, "
                  "C order) */",
                  f"#define {prefix}_{kind.upper()}{i}_SIZE {size}",
                  f"#define {prefix}_{kind.upper()}{i}_BYTES {d.nbytes}"]
    return lines


def header_text(layout: Layout, info: dict) -> str:
    """The text of NAME.h; `info` holds the version, source, target and threads."""
    n, N = layout.name, layout.name.upper()
    weights_file = info.get("weights_file")
    statuses = [f"#define {N}_{code_name} {code}  /* {_comment(text.replace('NAME', n))} */"
                for code, (code_name, text) in sorted(STATUS.items())]
    lines = [
        f"/* {n}.h: the C interface of the dlc bundle {n!r}.",
        " *",
        f" * Compiled by dlc {info['dlc_version']} from {_comment(info['source'])} for",
        f" * {info['target']['triple']} (cpu {info['target']['cpu']}), "
        f"{info['threads']} thread(s). Link with lib{n}.so",
        f" * (cc app.c -L. -l{n}) or with the object file (cc app.c {n}.o"
        f"{' -lgomp' if info.get('openmp') else ''} -lm).",
        " *",
        " *   void *weights = aligned_alloc(" + N + "_WEIGHTS_ALIGNMENT, " + N +
        "_WEIGHTS_BYTES);",
        f" *   {n}_load_weights(\"{weights_file}\", weights);" if weights_file
        else " *   (or weights = NULL: the library holds them)",
        f" *   void *arena = aligned_alloc({N}_ARENA_ALIGNMENT, {N}_ARENA_BYTES);",
        f" *   const void *inputs[{N}_NUM_INPUTS] = {{...}};   "
        "each points to one input's data",
        f" *   void *outputs[{N}_NUM_OUTPUTS] = {{...}};       "
        "each to room for one output",
        f" *   int32_t status = {n}_run(inputs, outputs, weights, arena);",
        f" *   if (status != {N}_OK) fprintf(stderr, \"%s in %s\\n\",",
        f" *                               {n}_error_string(status), "
        f"{n}_error_origin(arena));",
        " *",
        " * One arena per thread that calls at the same time; the weights are read-only",
        " * unless the bundle updates them (a training step does, in place, and only when",
        f" * {n}_run returns {N}_OK). */",
        f"#ifndef DLC_BUNDLE_{N}_H",
        f"#define DLC_BUNDLE_{N}_H",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "#include <stdio.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        SHARED_TYPES,
        "/* status codes of " + n + "_run */",
        *statuses,
        "",
        f"#define {N}_ABI_VERSION {ABI_VERSION}",
        f"#define {N}_NUM_INPUTS {len(layout.inputs)}",
        f"#define {N}_NUM_OUTPUTS {len(layout.outputs)}",
        f"#define {N}_NUM_PARAMS {len(layout.params)}",
        f"#define {N}_ARENA_BYTES {layout.arena_bytes}",
        f"#define {N}_ARENA_ALIGNMENT {ALIGNMENT}",
        f"#define {N}_WEIGHTS_BYTES {layout.weights_bytes}",
        f"#define {N}_WEIGHTS_ALIGNMENT {ALIGNMENT}",
        f"#define {N}_WEIGHTS_EMBEDDED {0 if weights_file else 1}",
        f"#define {N}_WEIGHTS_FILE {_c_string(weights_file or '')}",
        f"#define {N}_UPDATES_WEIGHTS {int(layout.updates_weights)}",
        f"#define {N}_THREADS {info['threads']}",
        "",
        *_array_macros(N, "input", layout.inputs),
        *_array_macros(N, "output", layout.outputs),
        "",
        *_table(n, "input", layout.inputs),
        *_table(n, "output", layout.outputs),
        *_table(n, "param", layout.params),
        "",
        "/* Run the model once. inputs[i] and outputs[j] point to the arrays described by",
        f"   {n}_inputs[i] and {n}_outputs[j]; weights to {N}_WEIGHTS_BYTES holding {n}.weights",
        f"   (NULL: the embedded weights); arena to {N}_ARENA_BYTES of scratch. Both",
        f"   blocks {ALIGNMENT}-byte aligned. Returns {N}_OK or a status above. */",
        f"int32_t {n}_run(const void *const *inputs, void *const *outputs, void *weights,",
        "        void *arena);",
        "/* A sentence for a status code. */",
        f"const char *{n}_error_string(int32_t status);",
        "/* After a failed call with `arena`: the kernel that failed, as its op or fused",
        "   group, layer and the model's file:line (\"\" when it did not fail). */",
        f"const char *{n}_error_origin(const void *arena);",
        "/* The weights inside the library (NULL unless compiled with --embed-weights). */",
        f"void *{n}_embedded_weights(void);",
        f"int32_t {n}_abi_version(void);",
        "",
        f"/* Read a weights file (raw little-endian arrays at {n}_params[k].offset) into",
        f"   `weights`; {N}_OK, or {N}_ERR_WEIGHTS_FILE when it is missing or the wrong size. */",
        f"static inline int32_t {n}_load_weights(const char *path, void *weights) {{",
        "    FILE *f;",
        "    size_t got;",
        "    int extra;",
        f"    if (path == NULL || (weights == NULL && {N}_WEIGHTS_BYTES > 0)) "
        f"return {N}_ERR_NULL;",
        '    f = fopen(path, "rb");',
        f"    if (f == NULL) return {N}_ERR_WEIGHTS_FILE;",
        f"    got = {N}_WEIGHTS_BYTES > 0 ? fread(weights, 1, {N}_WEIGHTS_BYTES, f) : 0;",
        "    extra = fgetc(f);",
        "    fclose(f);",
        f"    return got == {N}_WEIGHTS_BYTES && extra == EOF ? {N}_OK : {N}_ERR_WEIGHTS_FILE;",
        "}",
        "",
        f"static const dlc_bundle {n}_bundle = {{",
        f"    {_c_string(n)}, {N}_NUM_INPUTS, {N}_NUM_OUTPUTS, {N}_NUM_PARAMS,",
        f"    {N}_INPUTS_TABLE, {N}_OUTPUTS_TABLE, {N}_PARAMS_TABLE,",
        f"    {N}_ARENA_BYTES, {N}_ARENA_ALIGNMENT, {N}_WEIGHTS_BYTES, {N}_WEIGHTS_ALIGNMENT,",
        f"    {N}_WEIGHTS_EMBEDDED, {N}_UPDATES_WEIGHTS, {N}_THREADS, {N}_WEIGHTS_FILE,",
        f"    {n}_run, {n}_error_string, {n}_error_origin, {n}_embedded_weights,",
        "};",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        f"#endif /* DLC_BUNDLE_{N}_H */",
    ]
    return "\n".join(lines) + "\n"
