//! Tensors as the protocol sees them: a V2 datatype, a shape and row-major data.

use half::f16;
use std::fmt;
use std::str::FromStr;

/// The datatypes of the Open Inference Protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    F32,
    F64,
    Bytes,
}

impl DataType {
    /// Every datatype, in protocol order.
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::F32,
        DataType::F64,
        DataType::Bytes,
    ];

    /// The protocol's name for this datatype (`FP32`, `INT64`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Bytes per element in the binary encoding; `None` for BYTES, whose elements vary.
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 | DataType::F16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
            DataType::Bytes => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A datatype name that the protocol does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown datatype '{0}' (expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES)")]
pub struct UnknownDataType(pub String);

impl FromStr for DataType {
    type Err = UnknownDataType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataType::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| UnknownDataType(s.to_string()))
    }
}

/// The elements of a tensor, one vector variant per datatype.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies `$body` to the vector inside any `TensorData` variant.
#[macro_export]
macro_rules! for_each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::TensorData::Bool($v) => $body,
            $crate::TensorData::U8($v) => $body,
            $crate::TensorData::U16($v) => $body,
            $crate::TensorData::U32($v) => $body,
            $crate::TensorData::U64($v) => $body,
            $crate::TensorData::I8($v) => $body,
            $crate::TensorData::I16($v) => $body,
            $crate::TensorData::I32($v) => $body,
            $crate::TensorData::I64($v) => $body,
            $crate::TensorData::F16($v) => $body,
            $crate::TensorData::F32($v) => $body,
            $crate::TensorData::F64($v) => $body,
            $crate::TensorData::Bytes($v) => $body,
        }
    };
}

impl Default for TensorData {
    fn default() -> Self {
        TensorData::F32(Vec::new())
    }
}

impl TensorData {
    /// No elements, of `datatype`.
    pub fn empty(datatype: DataType) -> TensorData {
        match datatype {
            DataType::Bool => TensorData::Bool(vec![]),
            DataType::U8 => TensorData::U8(vec![]),
            DataType::U16 => TensorData::U16(vec![]),
            DataType::U32 => TensorData::U32(vec![]),
            DataType::U64 => TensorData::U64(vec![]),
            DataType::I8 => TensorData::I8(vec![]),
            DataType::I16 => TensorData::I16(vec![]),
            DataType::I32 => TensorData::I32(vec![]),
            DataType::I64 => TensorData::I64(vec![]),
            DataType::F16 => TensorData::F16(vec![]),
            DataType::F32 => TensorData::F32(vec![]),
            DataType::F64 => TensorData::F64(vec![]),
            DataType::Bytes => TensorData::Bytes(vec![]),
        }
    }

    /// The datatype of these elements.
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::U8,
            TensorData::U16(_) => DataType::U16,
            TensorData::U32(_) => DataType::U32,
            TensorData::U64(_) => DataType::U64,
            TensorData::I8(_) => DataType::I8,
            TensorData::I16(_) => DataType::I16,
            TensorData::I32(_) => DataType::I32,
            TensorData::I64(_) => DataType::I64,
            TensorData::F16(_) => DataType::F16,
            TensorData::F32(_) => DataType::F32,
            TensorData::F64(_) => DataType::F64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        for_each_variant!(self, v => v.len())
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `values` cast to `datatype` (as a C cast: floats to integers truncate and saturate);
    /// `None` for BYTES.
    pub fn from_f64(datatype: DataType, values: &[f64]) -> Option<TensorData> {
        Some(match datatype {
            DataType::Bool => TensorData::Bool(values.iter().map(|&x| x != 0.0).collect()),
            DataType::U8 => TensorData::U8(values.iter().map(|&x| x as u8).collect()),
            DataType::U16 => TensorData::U16(values.iter().map(|&x| x as u16).collect()),
            DataType::U32 => TensorData::U32(values.iter().map(|&x| x as u32).collect()),
            DataType::U64 => TensorData::U64(values.iter().map(|&x| x as u64).collect()),
            DataType::I8 => TensorData::I8(values.iter().map(|&x| x as i8).collect()),
            DataType::I16 => TensorData::I16(values.iter().map(|&x| x as i16).collect()),
            DataType::I32 => TensorData::I32(values.iter().map(|&x| x as i32).collect()),
            DataType::I64 => TensorData::I64(values.iter().map(|&x| x as i64).collect()),
            DataType::F16 => TensorData::F16(values.iter().map(|&x| f16::from_f64(x)).collect()),
            DataType::F32 => TensorData::F32(values.iter().map(|&x| x as f32).collect()),
            DataType::F64 => TensorData::F64(values.to_vec()),
            DataType::Bytes => return None,
        })
    }

    /// Elements as f64, for scoring outputs (classification); `None` for BYTES.
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        Some(match self {
            TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U16(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I16(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F16(v) => v.iter().map(|&x| x.to_f64()).collect(),
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::Bytes(_) => return None,
        })
    }
}

/// A named tensor: the unit that crosses the protocol and the backends.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// The datatype of the elements.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }
}

/// Builds a `TensorData` of the same variant as `like` from a function of its vector type.
macro_rules! map_same_variant {
    ($like:expr, $v:ident => $body:expr) => {
        match $like {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::U16($v) => TensorData::U16($body),
            TensorData::U32($v) => TensorData::U32($body),
            TensorData::U64($v) => TensorData::U64($body),
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::F16($v) => TensorData::F16($body),
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::Bytes($v) => TensorData::Bytes($body),
        }
    };
}

impl TensorData {
    /// Appends `other` when it is of the same datatype; false otherwise.
    fn append(&mut self, other: TensorData) -> bool {
        macro_rules! both {
            ($($var:ident),*) => {
                match (self, other) {
                    $((TensorData::$var(a), TensorData::$var(b)) => { a.extend(b); true })*
                    _ => false,
                }
            };
        }
        both!(Bool, U8, U16, U32, U64, I8, I16, I32, I64, F16, F32, F64, Bytes)
    }

    /// Elements `start..end`, as a new vector of the same datatype.
    fn range(&self, start: usize, end: usize) -> TensorData {
        map_same_variant!(self, v => v[start..end].to_vec())
    }
}

impl Tensor {
    /// Joins tensors along the first dimension. `None` if they differ in datatype or in
    /// any other dimension, or have no first dimension.
    pub fn concat_rows(parts: Vec<Tensor>) -> Option<Tensor> {
        let mut parts = parts.into_iter();
        let mut joined = parts.next()?;
        if joined.shape.is_empty() {
            return None;
        }
        for part in parts {
            if part.shape.len() != joined.shape.len() || part.shape[1..] != joined.shape[1..] {
                return None;
            }
            joined.shape[0] += part.shape[0];
            if !joined.data.append(part.data) {
                return None;
            }
        }
        Some(joined)
    }

    /// Splits along the first dimension into consecutive parts of `rows` rows each.
    /// `None` if the rows do not add up to the first dimension.
    pub fn split_rows(&self, rows: &[usize]) -> Option<Vec<Tensor>> {
        let total = *self.shape.first()?;
        if rows.iter().sum::<usize>() != total {
            return None;
        }
        let per_row = self.data.len().checked_div(total).unwrap_or(0);
        let mut start = 0;
        Some(
            rows.iter()
                .map(|&n| {
                    let mut shape = self.shape.clone();
                    shape[0] = n;
                    let data = self.data.range(start * per_row, (start + n) * per_row);
                    start += n;
                    Tensor { name: self.name.clone(), shape, data }
                })
                .collect(),
        )
    }
}

/// Product of `shape`, or `None` when it overflows `usize`.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datatype_name_parses_back_to_itself() {
        for d in DataType::ALL {
            assert_eq!(d.as_str().parse::<DataType>().unwrap(), d);
        }
        assert!("FLOAT".parse::<DataType>().is_err());
    }

    #[test]
    fn rows_split_back_into_the_tensors_that_were_joined() {
        let a = Tensor { name: "x".into(), shape: vec![1, 2], data: TensorData::F32(vec![1.0, 2.0]) };
        let b = Tensor { name: "x".into(), shape: vec![2, 2], data: TensorData::F32(vec![3.0, 4.0, 5.0, 6.0]) };
        let joined = Tensor::concat_rows(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(joined.shape, vec![3, 2]);
        assert_eq!(joined.split_rows(&[1, 2]).unwrap(), vec![a.clone(), b]);
        let wrong = Tensor { name: "x".into(), shape: vec![1, 3], data: TensorData::F32(vec![0.0; 3]) };
        assert!(Tensor::concat_rows(vec![a.clone(), wrong]).is_none());
        assert!(joined.split_rows(&[1, 1]).is_none());
    }

    #[test]
    fn element_count_reports_overflow() {
        assert_eq!(element_count(&[2, 3]), Some(6));
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[usize::MAX, 2]), None);
    }
}
