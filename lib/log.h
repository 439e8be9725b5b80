/* SPDX-License-Identifier: MIT */
/*
 * Program logging: one line per message on stderr. Under systemd (JOURNAL_STREAM
 * set) lines carry a syslog priority prefix ("<3>") so journald classifies them;
 * on a terminal they start with "ftd: ".
 */
#ifndef RINGFT_LIB_LOG_H
#define RINGFT_LIB_LOG_H

#include <syslog.h>

void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...)	 log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)	 log_msg(LOG_INFO, __VA_ARGS__)

#endif
