# Writes a C file holding one file's bytes as `const char NAME[]` (with a
# terminating NUL) and `const size_t NAME_len` (without it).
# IN: the file; OUT: the C file; NAME: the symbol.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR n "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
get_filename_component(base ${IN} NAME)
file(WRITE ${OUT} "/* Generated from ${base}; do not edit. */\n#include <stddef.h>\n\n"
  "const char ${NAME}[] = {${hex}0x00};\nconst size_t ${NAME}_len = ${n};\n")
