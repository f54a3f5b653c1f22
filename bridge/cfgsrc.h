/* The text of a config file as libconfig gets it: the file and every file
 * it @includes, read through kjb_read_file and spliced into one bounded
 * string, with a map from lines of that string back to file:line. */
#ifndef KJB_CFGSRC_H
#define KJB_CFGSRC_H

#include "err.h"

/* The config file with all its includes may hold at most this many bytes. */
#define KJB_CONFIG_MAX_BYTES (1024 * 1024)

typedef struct kjb_cfgsrc kjb_cfgsrc;

/* Reads the config file at path and splices in each file it @includes
 * (names relative to path's directory, nested up to 10 deep, 64 in all),
 * so that libconfig never opens a file itself. The text is bounded before
 * libconfig sees it: KJB_CONFIG_MAX_BYTES in all, no NUL byte, at most 64
 * settings in one group (libconfig checks each new setting against all
 * the others) and groups and lists nested at most 32 deep.
 * Returns 0 with *out to free with kjb_cfgsrc_free, or a negative code
 * with *out NULL and err: KJB_EIO for path itself ("<path>: <why>", as
 * kjb_read_file says it), KJB_ECONFIG for anything else, as
 * "<file>:<line>: <what>" ("t.cfg:3: @include \"/tmp\": Is a directory"). */
int kjb_cfgsrc_read(const char *path, kjb_cfgsrc **out, kjb_err *err);
void kjb_cfgsrc_free(kjb_cfgsrc *s);

/* The spliced text, NUL-terminated. Owned by s. */
const char *kjb_cfgsrc_text(const kjb_cfgsrc *s);

/* The file (as the user can open it: the path given, or the include's
 * name under path's directory) that line text_line of the text came from,
 * with that line's number in it in *line. Line 0, libconfig's line of the
 * root group, is the main file's line 0. Owned by s. */
const char *kjb_cfgsrc_where(const kjb_cfgsrc *s, unsigned text_line, unsigned *line);

#endif
