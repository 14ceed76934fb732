fn main() {
    ssl_build::link_libtorch();
}
