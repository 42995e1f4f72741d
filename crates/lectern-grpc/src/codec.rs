//! The protobuf codec of the service: prost's, with two differences for requests. A message
//! with more top-level fields than [`MAX_TOP_LEVEL_FIELDS`] is refused before it is decoded (an
//! empty `inputs` entry is 2 bytes on the wire and ~300 in memory: without the bound, a 64 MiB
//! message would become ~10 GB), and a message that does not decode is INVALID_ARGUMENT (the
//! client sent it), not prost's INTERNAL.

use bytes::Buf;
use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstEncoder};

/// Top-level fields a request may have: a `ModelInferRequest`'s inputs, requested outputs, raw
/// contents and parameters are each bounded by the HTTP protocol's
/// `MAX_TENSORS_PER_REQUEST`; a little more for its name, version and id.
pub const MAX_TOP_LEVEL_FIELDS: usize = 4 * lectern_core::protocol::MAX_TENSORS_PER_REQUEST + 16;

/// The codec the generated service uses (`codec_path` in build.rs).
pub struct BoundedCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        BoundedCodec(ProstCodec::default())
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder(PhantomData)
    }
}

pub struct BoundedDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        check_top_level_fields(buf.chunk()).map_err(Status::invalid_argument)?;
        U::decode(buf).map(Some).map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

/// Counts the message's top-level fields without decoding them.
fn check_top_level_fields(mut bytes: &[u8]) -> Result<(), String> {
    let malformed = || "failed to decode Protobuf message: a field is cut off".to_string();
    let mut fields = 0usize;
    while !bytes.is_empty() {
        fields += 1;
        if fields > MAX_TOP_LEVEL_FIELDS {
            return Err(format!(
                "the message has more than {MAX_TOP_LEVEL_FIELDS} top-level fields (inputs, outputs, raw contents, parameters)"
            ));
        }
        let key = prost::encoding::decode_varint(&mut bytes).map_err(|e| e.to_string())?;
        let skip = match key & 7 {
            0 => {
                prost::encoding::decode_varint(&mut bytes).map_err(|e| e.to_string())?;
                0
            }
            1 => 8,
            2 => usize::try_from(prost::encoding::decode_varint(&mut bytes).map_err(|e| e.to_string())?)
                .map_err(|_| malformed())?,
            5 => 4,
            wire => return Err(format!("failed to decode Protobuf message: wire type {wire} is not accepted")),
        };
        if skip > bytes.len() {
            return Err(malformed());
        }
        bytes = &bytes[skip..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    #[test]
    fn messages_with_too_many_top_level_fields_are_refused_before_decoding() {
        let mut request = pb::ModelInferRequest { model_name: "m".into(), ..Default::default() };
        request.inputs = vec![Default::default(); 1024];
        request.raw_input_contents = vec![vec![0; 4]; 1024];
        assert_eq!(check_top_level_fields(&request.encode_to_vec()), Ok(()));
        request.outputs = vec![Default::default(); 3000];
        let refused = check_top_level_fields(&request.encode_to_vec()).unwrap_err();
        assert!(refused.contains("more than"), "{refused}");
        for garbage in [&[0x0a, 0x05, b'a'][..], &[0xff, 0xff], &[0x0b]] {
            assert!(check_top_level_fields(garbage).is_err(), "{garbage:?}");
        }
    }
}
