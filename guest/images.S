/* SPDX-License-Identifier: MIT */
/*
 * The flat guest images, embedded into ringft_guests. The .bin files come from
 * the build directory (found through the assembler's -I, see CMakeLists.txt), and
 * this file's object depends on them, so a changed guest is re-embedded.
 */
	.section .rodata.guest_images, "a"

	.balign 4096
	.globl guest_bank_image
guest_bank_image:
	.incbin "bank.bin"

	.balign 4096
	.globl guest_dirty_image
guest_dirty_image:
	.incbin "dirty.bin"

	.balign 4096
	.globl guest_touch_image
guest_touch_image:
	.incbin "touch.bin"

	.balign 4096
	.globl guest_kv_image
guest_kv_image:
	.incbin "kv.bin"

	.section .note.GNU-stack, "", @progbits
