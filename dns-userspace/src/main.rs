fn main() {
    let dp = dnslb::dataplane::Dataplane::load(dnslb::dataplane::DataplaneOptions { port: 53, edns_payload: 1232, hot_capacity: 1024 });
    match dp { Ok(_) => println!("loaded"), Err(e) => println!("{e:?}") }
}
