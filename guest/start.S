/* SPDX-License-Identifier: MIT */
/*
 * Entry of every built-in guest, first in the image (GUEST_IMAGE_GPA). The loader
 * enters here at CPL 3 with RDI = vCPU index, RSI = struct guest_params *, RSP = top
 * of the vCPU's area (guest/guest_abi.h). guest_main(vcpu, params) never returns;
 * if it does, that is a guest bug: signal a panic.
 */
	.section .text.start, "ax"
	.globl _start
	.type _start, @function
_start:
	cld
	andq	$-16, %rsp
	xorl	%ebp, %ebp
	call	guest_main
	call	guest_panic
1:	pause
	jmp	1b
	.size _start, . - _start

	.section .note.GNU-stack, "", @progbits
