//! [`labelled!`]: enums whose values are metrics labels, with their names written once.
//!
//! A counter per value needs the values in a fixed order, their count and their names.
//! Written by hand beside the enum, those drift from it (a new reason exported under
//! the wrong label, or not at all); generated from the enum's own definition they
//! cannot.

/// Defines a fieldless enum of `Variant => "name"` pairs, with:
///
/// - `ALL`: every value, in declaration order (the order metrics export them in);
/// - `as_str`: the stable snake_case name;
/// - `index`: the value's position in `ALL`, for arrays of counters;
/// - `Display` as the name.
macro_rules! labelled {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident => $label:literal,
            )+
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                $variant,
            )+
        }

        impl $name {
            /// Every value, in a fixed order (the order metrics export them in).
            pub const ALL: [$name; [$($label),+].len()] = [$($name::$variant),+];

            #[doc = concat!("The stable name, for logs, metrics labels and headers: ",
                $("`", $label, "` "),+)]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }

            /// The position in [`ALL`](Self::ALL).
            #[allow(dead_code)]
            pub(crate) const fn index(self) -> usize {
                // Fieldless with default discriminants, declared in `ALL`'s order.
                self as usize
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use labelled;

#[cfg(test)]
mod tests {
    labelled! {
        #[derive(Debug, Clone, Copy, PartialEq)]
        enum Colour {
            Red => "red",
            DeepBlue => "deep_blue",
        }
    }

    #[test]
    fn every_value_is_listed_once_in_order_with_its_name() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::DeepBlue]);
        for (position, colour) in Colour::ALL.into_iter().enumerate() {
            assert_eq!(colour.index(), position);
        }
        assert_eq!(Colour::DeepBlue.as_str(), "deep_blue");
        assert_eq!(Colour::Red.to_string(), "red");
    }
}
