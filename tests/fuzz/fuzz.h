/* The entry points libFuzzer calls, declared once for every target (as
 * LLVM's FuzzerInterface.h does), so that their definitions have a
 * prototype. */
#ifndef KJB_FUZZ_H
#define KJB_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Called once before fuzzing; may consume its own options. Returns 0. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
/* Runs one input; returns 0 (other values are reserved by libFuzzer). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
