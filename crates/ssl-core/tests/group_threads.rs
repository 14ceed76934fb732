//! A process group is `Sync`: collectives started and waited for from several threads at once
//! (as backward's hooks and the training thread do) all complete, with the right sums.
use ssl_core::dist::{launch::free_port, Backend, ProcessGroup, World};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

#[test]
fn collectives_from_two_threads_at_once_all_complete() {
    let world = World { master_addr: "127.0.0.1".into(), master_port: free_port().unwrap(), ..World::single() };
    let group = ProcessGroup::new(&world, Backend::Gloo, Device::Cpu, Duration::from_secs(60)).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..2 {
            let group = &group;
            scope.spawn(move || {
                for round in 0..300 {
                    let ts: Vec<Tensor> = (0..4)
                        .map(|i| Tensor::full([64], (thread * 1000 + round * 4 + i) as f64, (Kind::Float, Device::Cpu)))
                        .collect();
                    for t in &ts {
                        group.all_reduce_sum_async(t).unwrap();
                    }
                    // Waits for this thread's collectives, and perhaps the other's: every one of
                    // them completes exactly once.
                    group.wait().unwrap();
                    for (i, t) in ts.iter().enumerate() {
                        let want = (thread * 1000 + round * 4 + i) as f64;
                        assert_eq!(t.double_value(&[0]), want, "a group of one sums a tensor to itself");
                    }
                }
            });
        }
    });
    group.barrier().unwrap();
}
