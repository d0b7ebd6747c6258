//! One module per op (or family of ops): documentation, forward, backward rule and CPU kernel.

pub mod attention;
pub mod batch_norm;
pub mod bias_gelu;
pub mod bicubic;
pub mod binary;
pub mod broadcast;
pub mod concat;
pub mod cross_entropy;
pub mod gelu;
pub mod index_select;
pub mod l2_normalize;
pub mod layer_norm;
pub mod linear;
pub mod matmul;
pub mod narrow;
pub mod patchify;
pub mod permute;
pub mod qkv_attention;
pub mod reduce;
pub mod reshape;
pub mod scalar;
pub mod softmax;
pub mod unary;
