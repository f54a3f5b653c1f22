/* Five-field cron expressions (minute hour day-of-month month day-of-week)
 * for schedules: strict parsing, and the ticks at or before and after a
 * wall-clock time. Pure: no clock, no time zone; schedule.c gives it local
 * wall-clock times that PostgreSQL computed. */
#ifndef KJB_CRON_H
#define KJB_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* The longest expression kjb_cron_parse takes, in bytes. */
#define KJB_CRON_MAX 256

/* A parsed expression: one bit per value each field allows. */
typedef struct {
  uint64_t second; /* bits 0-59; {0} unless parsed with KJB_CRON_SECONDS */
  uint64_t minute; /* bits 0-59 */
  uint32_t hour;   /* bits 0-23 */
  uint32_t dom;    /* bits 1-31 */
  uint16_t month;  /* bits 1-12 */
  uint8_t dow;     /* bits 0-6, 0 is Sunday */
  /* The field started with "*": unrestricted for the day rule (below). */
  bool dom_star, dow_star;
} kjb_cron;

/* For tests only: the first field counts seconds instead of minutes, and
 * every minute of the matching hours and days has those ticks, so that
 * "0-59/2 * * * *" ticks every two seconds. */
#define KJB_CRON_SECONDS 1u

/* Parses text into *out. Fields are separated by blanks and hold "*",
 * numbers, ranges "a-b", steps ("a-b/n", or "*" followed by "/n"), and
 * lists of those separated by commas. Months take jan-dec and
 * weekdays sun-sat (any case); weekday 7 is Sunday like 0. As in Vixie
 * cron, when both day-of-month and day-of-week are restricted (neither
 * starts with "*"), a day matches if either does; otherwise both must.
 * "@yearly" (or "@annually"), "@monthly", "@weekly", "@daily" (or
 * "@midnight") and "@hourly" stand for their usual expressions. flags is
 * 0 or KJB_CRON_SECONDS. Returns 0, or -KJB_ECONFIG with err->msg saying
 * what is wrong and where ("field 2 (hour): 24 is out of range 0-23"),
 * including an expression that can never match ("0 0 30 2 *"). */
int kjb_cron_parse(const char *text, unsigned flags, kjb_cron *out, kjb_err *err);

/* Wall-clock times are seconds since 1970-01-01 00:00:00 of the proleptic
 * Gregorian calendar, without a time zone: what a clock on the wall in
 * the schedule's zone shows (PostgreSQL's extract(epoch FROM timestamp)). */

/* The latest tick at or before at into *out. Returns 0, or -1 when there
 * is none within the 400 years before at (only for at near year 1: every
 * expression that parses matches within any 400 years). */
int kjb_cron_prev(const kjb_cron *c, int64_t at, int64_t *out);

/* The earliest tick after at into *out. Returns 0, or -1 when there is
 * none within the 400 years after at (never, in practice). */
int kjb_cron_next(const kjb_cron *c, int64_t at, int64_t *out);

/* A wall-clock time as "YYYY-MM-DD HH:MM:SS" (PostgreSQL's timestamp
 * input); buf holds at least 32 bytes. */
void kjb_cron_format(int64_t wall, char *buf, size_t size);

#endif
