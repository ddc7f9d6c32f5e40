//! One way to declare a brick's drop reasons.
//!
//! A brick names its drop reasons once, in [`Brick::drop_reasons`](crate::Brick::drop_reasons)
//! order, and passes an index to [`Output::drop`](crate::Output::drop). Keeping a names array
//! and a set of index constants in sync by hand is how counters end up under the wrong name;
//! [`drop_reasons!`](crate::drop_reasons) declares both from one list.

/// Declares a drop-reason enum and its counter names from one list.
///
/// Each variant is written `Variant => "counter name"`; the names must stay stable, since
/// tests and metrics read counters by name. The macro generates a `#[repr(usize)]` `Copy`
/// enum with the variants in order, and on it:
///
/// - `NAMES`: the texts in declaration order, what `Brick::drop_reasons` returns;
/// - `ALL`: every variant in the same order;
/// - `index(self)`: the variant's position, what `Output::drop` takes;
/// - `text(self)`: the variant's counter name.
///
/// ```
/// brick_core::drop_reasons! {
///     /// Why the example brick drops a packet.
///     pub enum ExampleDrop {
///         /// Shorter than an Ethernet header.
///         Runt => "runt",
///         /// No buffer for a copy.
///         Pool => "pool empty",
///     }
/// }
///
/// assert_eq!(ExampleDrop::NAMES, &["runt", "pool empty"]);
/// assert_eq!(ExampleDrop::Pool.index(), 1);
/// assert_eq!(ExampleDrop::Pool.text(), "pool empty");
/// assert_eq!(ExampleDrop::ALL, &[ExampleDrop::Runt, ExampleDrop::Pool]);
/// ```
#[macro_export]
macro_rules! drop_reasons {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident => $text:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(usize)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                $variant,
            )+
        }

        #[allow(dead_code)]
        impl $name {
            /// Counter names, in declaration (and discriminant) order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            /// Every reason, in declaration (and discriminant) order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// Index of the reason, as `Output::drop` takes it.
            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }

            /// Counter name of the reason.
            #[inline]
            pub const fn text(self) -> &'static str {
                Self::NAMES[self as usize]
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::drop_reasons! {
        /// Test reasons.
        enum TestDrop {
            /// First.
            First => "first",
            Second => "second reason",
            /// Third.
            Third => "third",
        }
    }

    #[test]
    fn names_and_all_follow_discriminants() {
        assert_eq!(TestDrop::NAMES, &["first", "second reason", "third"]);
        assert_eq!(TestDrop::ALL.len(), TestDrop::NAMES.len());
        for (i, r) in TestDrop::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(r.index(), i);
            assert_eq!(r.text(), TestDrop::NAMES[i]);
        }
    }

    #[test]
    fn usable_in_const_context() {
        const I: usize = TestDrop::Third.index();
        const T: &str = TestDrop::Second.text();
        assert_eq!((I, T), (2, "second reason"));
    }
}
