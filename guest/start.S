/* SPDX-License-Identifier: MIT */
/*
 * Entry of every built-in guest, first in the image (GUEST_IMAGE_GPA), and its
 * exception entries at fixed offsets after it (guest/guest_abi.h). The loader
 * enters here at CPL 3 with RDI = vCPU index, RSI = struct guest_params *, RSP = top
 * of the vCPU's area (guest/guest_abi.h). guest_main(vcpu, params) never returns;
 * if it does, that is a guest bug: signal a panic.
 */
#include "guest/guest_abi.h"

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

/*
 * Exception entries, one per vector at a fixed offset (the loader's IDT points
 * here), at CPL 0 on the vCPU's exception stack: each pushes a zero where the CPU
 * pushes no error code, then its vector, and joins exc_common, which saves the
 * registers a C call may clobber and calls guest_exception(frame) (guest/lib.c).
 * That returns only to retry the faulting instruction.
 */
	.macro	exc_entry vec
	.org	GUEST_EXC_ENTRY_OFFSET + \vec * GUEST_EXC_ENTRY_SIZE, 0xcc
	.if	(\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	pushq	$0
	.endif
	pushq	$\vec
	jmp	exc_common
	.endm

	.irp	vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	exc_entry \vec
	.endr
	.org	GUEST_EXC_ENTRY_OFFSET + GUEST_EXC_VECTORS * GUEST_EXC_ENTRY_SIZE, 0xcc

exc_common:
	cld
	pushq	%rax
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	movq	%rsp, %rdi
	call	guest_exception
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rax
	addq	$16, %rsp
	iretq

	.section .note.GNU-stack, "", @progbits
