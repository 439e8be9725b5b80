/* SPDX-License-Identifier: MIT */
/*
 * The PC's CMOS RAM and RTC at ports 0x70/0x71: what a Linux kernel reads at
 * boot (cmos.c). Its 128 bytes travel in the checkpoint.
 */
#ifndef RINGFT_VMM_CMOS_H
#define RINGFT_VMM_CMOS_H

#include "vmm/device.h"

#define CMOS_PORT_BASE 0x70

int cmos_new(struct device **ret_dev);

#endif
