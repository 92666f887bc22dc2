//! Which physical CPUs run which VM (DESIGN.md "the run model is partitioning"): every VM owns
//! one pCPU per vCPU until it ends; the boot CPU keeps the console and hands VMs to the
//! application processors, and runs them itself only where there is no other CPU. Pure, so
//! the rules and their refusals are host-tested; the kernel's dispatcher applies them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Where a VM asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// The next `n` free CPUs.
    Any(usize),
    /// These CPUs (indices: 0 is the boot CPU), one per vCPU in order.
    Cpus(Vec<usize>),
}

impl Want {
    fn count(&self) -> usize {
        match self {
            Want::Any(n) => *n,
            Want::Cpus(list) => list.len(),
        }
    }
}

/// Check each VM's request, in boot order, against the `online` CPUs (indices `0..online`): a
/// CPU that does not exist, the boot CPU while application processors exist, a CPU an earlier
/// VM of this boot already named, and more vCPUs than there are CPUs to run them are refused
/// with a message naming the CPU.
pub fn check(wants: &[Want], online: usize) -> Vec<Result<Want, String>> {
    let mut claimed: Vec<usize> = Vec::new();
    // CPUs VMs may run on: the application processors, or the boot CPU when it is alone.
    let usable = if online > 1 { online - 1 } else { 1 };
    wants
        .iter()
        .map(|w| {
            if w.count() > usable {
                return Err(format!(
                    "cpus={}: needs {} CPUs for its vCPUs and this machine has {usable} to run VMs on ({online} online, the boot CPU keeps the console)",
                    w.count(),
                    w.count()
                ));
            }
            let Want::Cpus(list) = w else { return Ok(w.clone()) };
            for &c in list {
                if c >= online {
                    return Err(format!(
                        "pcpus={c}: there is no CPU {c} ({online} online, numbered 0 to {})",
                        online - 1
                    ));
                }
                if c == 0 && online > 1 {
                    return Err(
                        "pcpus=0: CPU 0 is the boot CPU, which keeps the console and hands VMs to the others"
                            .into(),
                    );
                }
                if claimed.contains(&c) {
                    return Err(format!("pcpus={c}: CPU {c} belongs to another VM"));
                }
            }
            claimed.extend_from_slice(list);
            Ok(w.clone())
        })
        .collect()
}

/// The CPUs to give a VM that wants `want` now, given which CPUs are `busy` (index = CPU) and
/// which are `reserved` for VMs that named them and have not run yet; `None`: it waits.
pub fn pick(want: &Want, busy: &[bool], reserved: &[usize]) -> Option<Vec<usize>> {
    let first = if busy.len() > 1 { 1 } else { 0 };
    match want {
        Want::Cpus(list) => list.iter().all(|&c| busy.get(c).is_some_and(|b| !b)).then(|| list.clone()),
        Want::Any(n) => {
            let free: Vec<usize> =
                (first..busy.len()).filter(|&c| !busy[c] && !reserved.contains(&c)).take(*n).collect();
            (free.len() == *n).then_some(free)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn refusals_name_the_cpu() {
        let r = check(
            &[
                Want::Cpus(vec![1]),
                Want::Any(1),
                Want::Cpus(vec![2, 1]),
                Want::Cpus(vec![7]),
                Want::Cpus(vec![0]),
            ],
            4,
        );
        assert_eq!(r[0], Ok(Want::Cpus(vec![1])));
        assert_eq!(r[1], Ok(Want::Any(1)));
        assert_eq!(r[2], Err("pcpus=1: CPU 1 belongs to another VM".into()));
        assert_eq!(r[3], Err("pcpus=7: there is no CPU 7 (4 online, numbered 0 to 3)".into()));
        assert!(r[4].as_ref().unwrap_err().contains("CPU 0 is the boot CPU"));
        // Alone, the boot CPU runs VMs itself.
        assert_eq!(check(&[Want::Cpus(vec![0])], 1), vec![Ok(Want::Cpus(vec![0]))]);
        // A refused VM claims nothing: CPU 2 is still free for the next.
        assert_eq!(check(&[Want::Cpus(vec![2, 9]), Want::Cpus(vec![2])], 4)[1], Ok(Want::Cpus(vec![2])));
    }

    #[test]
    fn more_vcpus_than_cpus_are_refused() {
        let r = check(&[Want::Any(4), Want::Any(3), Want::Cpus(vec![1, 2, 3, 4])], 4);
        assert!(r[0].as_ref().unwrap_err().starts_with("cpus=4: needs 4 CPUs"), "{r:?}");
        assert_eq!(r[1], Ok(Want::Any(3)));
        assert!(r[2].is_err());
        assert!(check(&[Want::Any(2)], 1)[0].is_err(), "the boot CPU alone runs one vCPU");
    }

    #[test]
    fn vms_go_to_free_application_processors() {
        // CPUs 0 (boot), 1, 2, 3; 1 busy, 2 reserved for a VM that named it.
        let busy = [false, true, false, false];
        assert_eq!(pick(&Want::Any(1), &busy, &[2]), Some(vec![3]));
        assert_eq!(pick(&Want::Any(1), &busy, &[]), Some(vec![2]));
        assert_eq!(pick(&Want::Any(2), &busy, &[]), Some(vec![2, 3]));
        assert_eq!(pick(&Want::Any(2), &busy, &[2]), None, "waits for two free CPUs");
        assert_eq!(pick(&Want::Cpus(vec![2]), &busy, &[2]), Some(vec![2]));
        assert_eq!(pick(&Want::Cpus(vec![3, 2]), &busy, &[]), Some(vec![3, 2]), "in the vCPUs' order");
        assert_eq!(pick(&Want::Cpus(vec![1]), &busy, &[]), None, "waits for its CPU");
        assert_eq!(pick(&Want::Cpus(vec![2, 1]), &busy, &[]), None, "waits for all its CPUs");
        assert_eq!(pick(&Want::Any(1), &[false, true, true], &[]), None, "waits for any");
        assert_eq!(pick(&Want::Any(1), &[false], &[]), Some(vec![0]), "the boot CPU alone runs VMs");
        assert_eq!(pick(&Want::Any(1), &[true], &[]), None);
    }
}
