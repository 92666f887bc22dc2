//! Per-CPU GDT and TSS (SDM Vol. 3A 3.4.5, 7.7).
//!
//! Each CPU has its own GDT and TSS, because a TSS is busy while loaded and carries the CPU's
//! interrupt stacks (IST). The selectors are the same on every CPU and are non-zero with RPL 0,
//! as VMX host state requires (SDM 26.2.3).

use alloc::boxed::Box;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, FS, GS, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::{PrivilegeLevel, VirtAddr};

/// Kernel code segment selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data segment selector.
pub const KERNEL_DS: u16 = 0x10;
/// TSS selector.
pub const TSS_SELECTOR: u16 = 0x18;

/// IST slot (1-based in the IDT, 0-based in the TSS) of each dedicated exception stack.
pub const IST_NMI: u16 = 1;
pub const IST_DOUBLE_FAULT: u16 = 2;
pub const IST_MACHINE_CHECK: u16 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;

/// One CPU's descriptor tables; lives for the rest of the boot.
pub struct CpuTables {
    gdt: GlobalDescriptorTable,
    tss: &'static TaskStateSegment,
}

fn ist_stack() -> VirtAddr {
    let stack: &'static mut [u8] = Box::leak(alloc::vec![0u8; IST_STACK_SIZE].into_boxed_slice());
    // Stacks grow down; keep the top 16-byte aligned.
    VirtAddr::from_ptr(stack.as_ptr()) + (IST_STACK_SIZE as u64 & !0xF)
}

/// Build and load this CPU's GDT and TSS, reload every segment register. Call once per CPU.
pub fn init_this_cpu() -> &'static CpuTables {
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[(IST_NMI - 1) as usize] = ist_stack();
    tss.interrupt_stack_table[(IST_DOUBLE_FAULT - 1) as usize] = ist_stack();
    tss.interrupt_stack_table[(IST_MACHINE_CHECK - 1) as usize] = ist_stack();
    let tss: &'static TaskStateSegment = Box::leak(Box::new(tss));

    let mut gdt = GlobalDescriptorTable::new();
    let cs = gdt.append(Descriptor::kernel_code_segment());
    let ds = gdt.append(Descriptor::kernel_data_segment());
    let ts = gdt.append(Descriptor::tss_segment(tss));
    debug_assert_eq!((cs.0, ds.0, ts.0), (KERNEL_CS, KERNEL_DS, TSS_SELECTOR));
    let tables: &'static CpuTables = Box::leak(Box::new(CpuTables { gdt, tss }));
    tables.gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which lives forever.
    unsafe {
        CS::set_reg(SegmentSelector::new(1, PrivilegeLevel::Ring0));
        let data = SegmentSelector::new(2, PrivilegeLevel::Ring0);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        FS::set_reg(SegmentSelector(0));
        GS::set_reg(SegmentSelector(0));
        load_tss(SegmentSelector::new(3, PrivilegeLevel::Ring0));
    }
    tables
}

impl CpuTables {
    /// Linear address of this CPU's TSS (VMX host TR base, SVM host save area).
    pub fn tss_base(&self) -> u64 {
        self.tss as *const TaskStateSegment as u64
    }
}
