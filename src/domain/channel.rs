//! The channels a code can travel by, as data: each channel's name, the kind of address it
//! sends to, the form its message takes, and whether the destination's carrier is paid per
//! message. Adding a channel is a variant here, its row in `CHANNELS`, and a provider kind
//! that serves it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a code reaches a person.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Email,
    /// A phone call that reads the code out.
    Voice,
    /// A WhatsApp authentication template, its text and copy-code button WhatsApp's own.
    Whatsapp,
}

/// The kind of address a channel delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// An E.164 phone number.
    Phone,
    /// An email address.
    Email,
}

/// The form a channel's message takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageForm {
    /// The template's text, the code in it as it is.
    Text,
    /// The template's text to be read out, the code in it spelled one character at a time.
    Spoken,
    /// The code alone: the provider's own template holds the words.
    CodeAlone,
}

/// One channel's facts.
struct ChannelSpec {
    channel: Channel,
    name: &'static str,
    address: AddressKind,
    message: MessageForm,
    /// Whether the destination's carrier is paid for each message: the traffic SMS pumping
    /// inflates, which the pumping guard counts.
    carrier_billed: bool,
    /// Whether a tenant may use it only when its settings list it: calls cost the most and
    /// are what toll fraud pumps, so routing them for one tenant opens them to no other.
    opt_in: bool,
}

/// Every channel, in the order they are listed to people.
const CHANNELS: &[ChannelSpec] = &[
    ChannelSpec {
        channel: Channel::Sms,
        name: "sms",
        address: AddressKind::Phone,
        message: MessageForm::Text,
        carrier_billed: true,
        opt_in: false,
    },
    ChannelSpec {
        channel: Channel::Email,
        name: "email",
        address: AddressKind::Email,
        message: MessageForm::Text,
        carrier_billed: false,
        opt_in: false,
    },
    ChannelSpec {
        channel: Channel::Voice,
        name: "voice",
        address: AddressKind::Phone,
        message: MessageForm::Spoken,
        carrier_billed: true,
        opt_in: true,
    },
    ChannelSpec {
        channel: Channel::Whatsapp,
        name: "whatsapp",
        address: AddressKind::Phone,
        message: MessageForm::CodeAlone,
        carrier_billed: false,
        opt_in: false,
    },
];

impl Channel {
    /// Every channel otpd knows.
    pub fn all() -> impl Iterator<Item = Channel> {
        CHANNELS.iter().map(|spec| spec.channel)
    }

    fn spec(self) -> &'static ChannelSpec {
        CHANNELS
            .iter()
            .find(|spec| spec.channel == self)
            .expect("every channel has its row in CHANNELS")
    }

    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The kind of address this channel sends to.
    pub fn address_kind(self) -> AddressKind {
        self.spec().address
    }

    /// The channel a destination reached by this one is kept under: the first of its
    /// address kind (`sms` for a number). A number's SMS, calls and WhatsApp messages share
    /// one destination: one pending verification and its code, one cooldown, one send
    /// budget, one guess budget; a send on another phone channel is a resend there.
    pub fn destination_channel(self) -> Channel {
        let kind = self.address_kind();
        Channel::all()
            .find(|channel| channel.address_kind() == kind)
            .unwrap_or(self)
    }

    /// The form this channel's message takes.
    pub fn message_form(self) -> MessageForm {
        self.spec().message
    }

    /// The channels a tenant may use when its settings name none: all but the opt-in ones.
    pub fn by_default() -> impl Iterator<Item = Channel> {
        CHANNELS
            .iter()
            .filter(|spec| !spec.opt_in)
            .map(|spec| spec.channel)
    }

    /// Whether the destination's carrier is paid per message, so the pumping guard counts it.
    pub fn is_carrier_billed(self) -> bool {
        self.spec().carrier_billed
    }

    /// The channel names as a person would type them: `"sms", "email", "voice" or
    /// "whatsapp"`.
    pub fn names() -> String {
        Channel::listed(Channel::all())
    }

    /// `channels` as a person would read them: `"sms" or "email"`.
    pub fn listed(channels: impl IntoIterator<Item = Channel>) -> String {
        let quoted: Vec<String> = channels
            .into_iter()
            .map(|channel| format!("\"{channel}\""))
            .collect();
        match quoted.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        CHANNELS
            .iter()
            .find(|spec| spec.name == value)
            .map(|spec| spec.channel)
            .ok_or_else(|| {
                format!(
                    "channel '{value}' is not supported; use {}",
                    Channel::names()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_has_one_row_and_round_trips_by_name() {
        for channel in Channel::all() {
            assert_eq!(channel.as_str().parse::<Channel>(), Ok(channel));
            let json = serde_json::to_string(&channel).unwrap();
            assert_eq!(json, format!("\"{channel}\""));
        }
        assert_eq!(Channel::all().count(), CHANNELS.len());
        for channel in Channel::all() {
            let kept_under = channel.destination_channel();
            assert_eq!(kept_under.address_kind(), channel.address_kind());
            assert_eq!(kept_under.destination_channel(), kept_under);
        }
        assert_eq!(Channel::Voice.destination_channel(), Channel::Sms);
        assert_eq!(Channel::Whatsapp.destination_channel(), Channel::Sms);
        assert_eq!(Channel::Email.destination_channel(), Channel::Email);
        let error = "fax".parse::<Channel>().unwrap_err();
        assert!(
            error.contains("use \"sms\", \"email\", \"voice\" or \"whatsapp\""),
            "{error}"
        );
    }
}
