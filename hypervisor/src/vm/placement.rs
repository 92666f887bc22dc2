//! Which physical CPU runs which VM (DESIGN.md "the run model is partitioning"): every VM owns
//! the pCPU it runs on until it ends; the boot CPU keeps the console and hands VMs to the
//! application processors, and runs them itself only where there is no other CPU. Pure, so
//! the rules and their refusals are host-tested; the kernel's dispatcher applies them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Where a VM asked to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The next free CPU.
    Any,
    /// This CPU (an index: 0 is the boot CPU).
    Cpu(usize),
}

/// Check each VM's request, in boot order, against the `online` CPUs (indices `0..online`):
/// a CPU that does not exist, the boot CPU while application processors exist, and a CPU an
/// earlier VM of this boot already named are refused with a message naming the CPU.
pub fn check(wants: &[Want], online: usize) -> Vec<Result<Want, String>> {
    let mut claimed: Vec<usize> = Vec::new();
    wants
        .iter()
        .map(|&w| match w {
            Want::Any => Ok(w),
            Want::Cpu(c) if c >= online => {
                Err(format!("pcpus={c}: there is no CPU {c} ({online} online, numbered 0 to {})", online - 1))
            }
            Want::Cpu(0) if online > 1 => {
                Err("pcpus=0: CPU 0 is the boot CPU, which keeps the console and hands VMs to the others"
                    .into())
            }
            Want::Cpu(c) if claimed.contains(&c) => Err(format!("pcpus={c}: CPU {c} belongs to another VM")),
            Want::Cpu(c) => {
                claimed.push(c);
                Ok(w)
            }
        })
        .collect()
}

/// The CPU to give a VM that wants `want` now, given which CPUs are `busy` (index = CPU) and
/// which are `reserved` for VMs that named them and have not run yet; `None`: it waits.
pub fn pick(want: Want, busy: &[bool], reserved: &[usize]) -> Option<usize> {
    let first = if busy.len() > 1 { 1 } else { 0 };
    match want {
        Want::Cpu(c) => busy.get(c).is_some_and(|b| !b).then_some(c),
        Want::Any => (first..busy.len()).find(|&c| !busy[c] && !reserved.contains(&c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn refusals_name_the_cpu() {
        let r = check(&[Want::Cpu(1), Want::Any, Want::Cpu(1), Want::Cpu(7), Want::Cpu(0)], 4);
        assert_eq!(r[0], Ok(Want::Cpu(1)));
        assert_eq!(r[1], Ok(Want::Any));
        assert_eq!(r[2], Err("pcpus=1: CPU 1 belongs to another VM".into()));
        assert_eq!(r[3], Err("pcpus=7: there is no CPU 7 (4 online, numbered 0 to 3)".into()));
        assert!(r[4].as_ref().unwrap_err().contains("CPU 0 is the boot CPU"));
        // Alone, the boot CPU runs VMs itself.
        assert_eq!(check(&[Want::Cpu(0)], 1), vec![Ok(Want::Cpu(0))]);
    }

    #[test]
    fn vms_go_to_free_application_processors() {
        // CPUs 0 (boot), 1, 2, 3; 1 busy, 2 reserved for a VM that named it.
        let busy = [false, true, false, false];
        assert_eq!(pick(Want::Any, &busy, &[2]), Some(3));
        assert_eq!(pick(Want::Any, &busy, &[]), Some(2));
        assert_eq!(pick(Want::Cpu(2), &busy, &[2]), Some(2));
        assert_eq!(pick(Want::Cpu(1), &busy, &[]), None, "waits for its CPU");
        assert_eq!(pick(Want::Any, &[false, true, true], &[]), None, "waits for any");
        assert_eq!(pick(Want::Any, &[false], &[]), Some(0), "the boot CPU alone runs VMs");
        assert_eq!(pick(Want::Any, &[true], &[]), None);
    }
}
