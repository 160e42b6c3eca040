/* Runs a dlc bundle from C, with no Python: the program a user would write against the
 * generated header, made generic over the bundle's name.
 *
 *   cc -std=c11 -I DIR -DBUNDLE=mlp -DBUNDLE_UPPER=MLP '-DBUNDLE_HEADER="mlp.h"' \
 *      run_bundle.c -L DIR -lmlp
 *   ./a.out DIR OUT STEPS input0.bin [input1.bin ...]
 *
 * Reads the weights file from DIR (unless they are embedded), each input from a raw file
 * of exactly its size, calls BUNDLE_run STEPS times, and writes OUT/output<j>.bin and, for a
 * bundle that updates its weights (a training step), OUT/weights.bin. Before that it checks
 * that bad pointers are refused with the documented status codes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include BUNDLE_HEADER

#define PASTE2(a, b) a##b
#define PASTE(a, b) PASTE2(a, b)
#define API(suffix) PASTE(BUNDLE, suffix)
#define CONST(suffix) PASTE(BUNDLE_UPPER, suffix)

static const dlc_bundle *bundle = &API(_bundle);

static void *aligned_block(uint64_t bytes, uint64_t alignment) {
    uint64_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void *p = aligned_alloc(alignment, rounded ? rounded : alignment);
    if (p == NULL) {
        fprintf(stderr, "out of memory (%llu bytes)\n", (unsigned long long)bytes);
        exit(3);
    }
    memset(p, 0, rounded ? rounded : alignment);
    return p;
}

static void *read_exactly(const char *path, uint64_t bytes) {
    void *data = aligned_block(bytes, 64);
    FILE *f = fopen(path, "rb");
    size_t got;
    int extra;
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(3);
    }
    got = fread(data, 1, bytes, f);
    extra = fgetc(f);
    fclose(f);
    if (got != bytes || extra != EOF) {
        fprintf(stderr, "%s: expected exactly %llu bytes\n", path, (unsigned long long)bytes);
        exit(3);
    }
    return data;
}

static void write_file(const char *dir, const char *name, const void *data, uint64_t bytes) {
    char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(3);
    }
    fclose(f);
}

/* Bad pointers never reach the kernels: each call must return its status code. */
static int check_refusals(const void *const *inputs, void *const *outputs, void *weights,
                          char *arena) {
    int bad = 0;
    int32_t status = bundle->run(inputs, outputs, weights, NULL);
    if (status != CONST(_ERR_NULL)) {
        fprintf(stderr, "NULL arena: status %d, expected %d\n", status, CONST(_ERR_NULL));
        bad = 1;
    }
    status = bundle->run(inputs, outputs, weights, arena + 8);
    if (status != CONST(_ERR_ALIGNMENT)) {
        fprintf(stderr, "misaligned arena: status %d, expected %d\n", status,
                CONST(_ERR_ALIGNMENT));
        bad = 1;
    }
    if (bundle->num_inputs > 0) {
        status = bundle->run(NULL, outputs, weights, arena);
        if (status != CONST(_ERR_NULL)) {
            fprintf(stderr, "NULL inputs: status %d\n", status);
            bad = 1;
        }
    }
    if (strlen(bundle->error_string(CONST(_ERR_NULL))) == 0) bad = 1;
    return bad;
}

int main(int argc, char **argv) {
    const char *dir, *out;
    int steps, i;
    void *weights = NULL;
    char *arena;
    const void **inputs;
    void **outputs;
    char name[64];

    if (argc != 4 + bundle->num_inputs) {
        fprintf(stderr, "usage: %s DIR OUT STEPS (%d input files)\n", argv[0],
                bundle->num_inputs);
        return 2;
    }
    dir = argv[1];
    out = argv[2];
    steps = atoi(argv[3]);
    if (!bundle->weights_embedded) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, bundle->weights_file);
        weights = aligned_block(bundle->weights_bytes, bundle->weights_alignment);
        if (API(_load_weights)(path, weights) != 0) {
            fprintf(stderr, "%s: %s\n", path, bundle->error_string(CONST(_ERR_WEIGHTS_FILE)));
            return 3;
        }
    }
    arena = aligned_block(bundle->arena_bytes, bundle->arena_alignment);
    inputs = calloc(bundle->num_inputs + 1, sizeof *inputs);
    outputs = calloc(bundle->num_outputs + 1, sizeof *outputs);
    for (i = 0; i < bundle->num_inputs; i++)
        inputs[i] = read_exactly(argv[4 + i], bundle->inputs[i].bytes);
    for (i = 0; i < bundle->num_outputs; i++)
        outputs[i] = aligned_block(bundle->outputs[i].bytes, 64);
    if (check_refusals(inputs, outputs, weights, arena)) return 4;
    for (i = 0; i < steps; i++) {
        int32_t status = bundle->run(inputs, outputs, weights, arena);
        if (status != 0) {
            fprintf(stderr, "step %d: %s (%s)\n", i, bundle->error_string(status),
                    bundle->error_origin(arena));
            return 5;
        }
    }
    for (i = 0; i < bundle->num_outputs; i++) {
        snprintf(name, sizeof name, "output%d.bin", i);
        write_file(out, name, outputs[i], bundle->outputs[i].bytes);
    }
    if (bundle->updates_weights) {
        void *current = weights ? weights : bundle->embedded_weights();
        write_file(out, "weights.bin", current, bundle->weights_bytes);
    }
    printf("%s: %d step(s), %d output(s)\n", bundle->name, steps, bundle->num_outputs);
    return 0;
}
